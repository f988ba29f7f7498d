process EVOSCAN_EMBED {
    tag "${meta.id} ${chunk}/${chunks}"
    label 'process_gpu'  // conf/base.config asks for a GPU only when the backend needs one (evo2, hf)
    // the CPU or the GPU image, as conf/modules.config chooses for the backend or the search device
    container "${task.ext.container}"

    input:
    tuple val(meta), path(windows), val(chunk), val(chunks), path(motifs), path(weights), path(model_dir), path(model_config)

    output:
    tuple val(meta), path("${meta.id}.embeddings.${chunk}.h5"), emit: embeddings
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), emit: versions

    script:
    def args = task.ext.args ?: ''
    // a motif file, checkpoint (with its architecture YAML if custom) or hf model directory is
    // staged like any input (a bucket on cloud batch, a link on HPC)
    def motif_file = motifs ? "--motifs ${motifs}" : ''
    def checkpoint = weights ? "--weights ${weights}" : ''
    def model = model_dir ? "--model ${model_dir}" : ''
    def config = model_config ? "--model-config ${model_config}" : ''
    // a retry (after a kill for time or memory) continues from the blocks its attempt before kept
    def kept = task.attempt > 1 && task.previousTrace ? "${task.previousTrace.workdir}/${meta.id}.embeddings.${chunk}.h5.partial" : ''
    """
    ${kept ? "if [ -d '${kept}' ]; then mv '${kept}' .; fi" : ''}
    evoscan embed --windows ${windows} --chunk ${chunk}/${chunks} ${args} ${motif_file} ${checkpoint} ${config} ${model} -o ${meta.id}.embeddings.${chunk}.h5
    """

    stub:
    def args = task.ext.args ?: ''
    """
    echo "evoscan embed ${args}"
    touch ${meta.id}.embeddings.${chunk}.h5
    """
}
